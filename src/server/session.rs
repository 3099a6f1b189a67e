//! Session states after the handshake: `AwaitLogin -> AwaitPassphrase -> Authenticated`,
//! or `Authenticated` at once after a resumption.
//!
//! Invariant: the proof tokens are built only by the login handlers once the
//! password (then the passphrase) verified, or by the resumption once its
//! ticket was accepted, so a handler that takes `&Authenticated` cannot run
//! for a session that did not log in.

/// Proof that the password of `uid` verified on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordAccepted {
    uid: u64,
    /// The account's ticket generation when the password verified: a
    /// password change or lgoe since then refuses the passphrase step.
    generation: u64,
}

/// Proof that this connection logged in as `uid` with password and passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    uid: u64,
    name: String,
    /// Resumed with a ticket, not logged in with the secrets.
    resumed: bool,
}

impl PasswordAccepted {
    /// Only for `handler::account` after a verified password.
    pub(crate) fn after_password_verified(uid: u64, generation: u64) -> PasswordAccepted {
        PasswordAccepted { uid, generation }
    }

    /// The account whose password verified.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// The account's ticket generation when its password verified.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

// The room and direct-message handlers read these (issues 3 and 4).
#[allow(dead_code)]
impl Authenticated {
    /// Only for `handler::account` after a verified passphrase.
    pub(crate) fn after_passphrase_verified(step: PasswordAccepted, name: String) -> Authenticated {
        Authenticated { uid: step.uid, name, resumed: false }
    }

    /// Only for `Core::resumed`, after a ticket opened, its binder verified,
    /// its policy held and its strike was durable (PROTOCOL.md §3).
    pub(crate) fn after_resumption(uid: u64, name: String) -> Authenticated {
        Authenticated { uid, name, resumed: true }
    }

    /// Whether the session was resumed with a ticket.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Only for the fuzzing seam (`Core::open_authenticated`): a session that
    /// skipped the login. Never built into sottod.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn without_login(uid: u64, name: String) -> Authenticated {
        Authenticated { uid, name, resumed: false }
    }

    /// The logged-in user.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// The logged-in user's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Where an established session stands.
#[derive(Debug, Clone)]
pub enum Session {
    /// Not logged in.
    AwaitLogin,
    /// Password verified, passphrase outstanding.
    AwaitPassphrase(PasswordAccepted),
    /// Logged in.
    Authenticated(Authenticated),
}
