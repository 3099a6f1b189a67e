//! sottoctl's command line and output: words to one admin request, answer
//! frames to a text for people and a JSON object.
//!
//! Invariant: parsing is pure and refuses (usage, status 2) anything it
//! cannot put in a request field whole: a name, reason or text that does
//! not fit is an error, never cut; unknown mnemonics and roles are refused
//! before anything is sent.

use std::path::PathBuf;

use serde_json::{json, Value};
use sotto::opcodes::{
    self, AdminAnnounce, AdminDelete, AdminDeny, AdminKick, AdminRefusals, AdminReply, AdminRole, AdminSetState,
    AdminShow, AdminStats, AdminStatsReply, AdminUserEntry, AdminUserInfo, AdminUsers,
};
use sotto::server::acct::{self, State};
use sotto::wire::{self, Message};
use zerocopy::IntoBytes;

pub const USAGE: &str = "usage: sottoctl [--data DIR | --socket PATH] [--json] COMMAND

Talks to the running sottod through its admin socket, DATA/admin.sock (mode 0600;
only root and sottod's service user may use it).

commands:
  users [--online]                      every account (or those online): state, roles, sessions
  show USER                             state, roles, created, last logins, failed logins, sessions
  ban USER --reason TEXT [--for DURATION]
                                        refuse USER's logins with TEXT and the end date, and close
                                        its sessions; DURATION like 30m, 2h, 7d (default: indefinitely)
  unban USER                            make USER active again (also ends a block or a hold)
  block USER [--for DURATION]           refuse USER's logins exactly as a wrong password is
  hold USER                             put USER on hold (awaiting approval)
  approve USER                          make an account on hold active
  kick USER [--reason TEXT]             close every session of USER (it may log in again)
  announce TEXT... [--ttl DURATION]     tell every user: online ones now, the others at their
                                        next login within DURATION (default 7d)
  grant USER ROLE, revoke USER ROLE     ROLE: moderator or admin (every account has user)
  deny USER MNEMONIC...                 refuse these requests to USER (e.g. `deny bob srm smp`
                                        mutes bob: a three-letter family covers its size classes
                                        srms, srmm, srml, srmx); see `sottod --opcodes`
  allow USER MNEMONIC...                undo deny
  delete USER                           delete the account as /delete-account does: sessions
                                        closed, waiting DMs returned to their senders, owned rooms
                                        passed on, files removed, the name reserved (sottod's
                                        --name-reserve)
  stats                                 connections, users online, refusals by reason, queue and
                                        storage sizes

options:
  --data DIR      sottod's data directory (default /var/lib/sotto when installed, ./data in a
                  build tree); the socket is DIR/admin.sock
  --socket PATH   the admin socket itself
  --json          one JSON object on stdout instead of text
  --help          this text
  --man           this text as a manual page, sottoctl(8)

exit status: 0 done, 1 refused by the server, 2 usage, 3 no server running, 4 permission
denied, 5 no such user.";

/// What to do.
pub enum Cmd {
    Users { online: bool },
    Show(String),
    SetState { user: String, state: State, for_ms: u64, reason: String },
    Kick { user: String, reason: String },
    Announce { text: String, ttl_ms: u64 },
    Role { user: String, role: u8, grant: bool },
    Deny { user: String, mnemonics: Vec<String>, allow: bool },
    Delete(String),
    Stats,
}

/// The parsed command line.
pub struct Opts {
    pub socket: PathBuf,
    pub json: bool,
    pub cmd: Cmd,
}

/// `30s`, `30m`, `2h`, `7d` (or plain seconds) in milliseconds.
pub fn duration(v: &str) -> Result<u64, String> {
    let bad = || format!("`{v}` is not a duration like 30m, 2h or 7d");
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(format!("`{v}`: a duration is more than zero"));
    }
    Ok(n.saturating_mul(secs).saturating_mul(1000))
}

/// True when this binary runs from a cargo target directory (as sottod decides it).
fn in_build_tree() -> bool {
    let Ok(exe) = std::env::current_exe() else { return false };
    exe.ancestors().skip(1).take(4).any(|dir| dir.join("CACHEDIR.TAG").is_file())
}

/// The command line; None after `--help`.
pub fn parse(words: Vec<String>) -> Result<Option<Opts>, String> {
    let mut socket = None;
    let mut json = false;
    let mut rest = Vec::new();
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut online = false;
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let mut value = |w: &str| it.next().ok_or_else(|| format!("{w} needs a value"));
        let word = w.clone();
        match word.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--man" => {
                let man =
                    sotto::manpage::render("sottoctl", 8, "the sotto operator's tool", USAGE, "sottod(8), sotto(1)");
                print!("{man}");
                return Ok(None);
            }
            "--json" => json = true,
            "--online" => online = true,
            "--data" => socket = Some(PathBuf::from(value(&w)?).join("admin.sock")),
            "--socket" => socket = Some(PathBuf::from(value(&w)?)),
            "--reason" | "--for" | "--ttl" => {
                let v = value(&w)?;
                flags.push((w, v));
            }
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            _ => rest.push(w),
        }
    }
    let socket = socket.unwrap_or_else(|| {
        let data = if in_build_tree() { "data" } else { "/var/lib/sotto" };
        PathBuf::from(data).join("admin.sock")
    });
    let flag = |name: &str| flags.iter().rev().find(|(f, _)| f == name).map(|(_, v)| v.clone());
    let allowed = |names: &[&str]| match flags.iter().find(|(f, _)| !names.contains(&f.as_str())) {
        Some((f, _)) => Err(format!("{f} does not go with this command")),
        None => Ok(()),
    };
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    let state = |user: &str, state: State, for_ok: bool| -> Result<Cmd, String> {
        let names: &[&str] = if for_ok { &["--for"] } else { &[] };
        allowed(names)?;
        let for_ms = flag("--for").map(|d| duration(&d)).transpose()?.unwrap_or(0);
        Ok(Cmd::SetState { user: user.to_owned(), state, for_ms, reason: String::new() })
    };
    let cmd = match words.as_slice() {
        ["users"] => {
            allowed(&[])?;
            Cmd::Users { online }
        }
        ["show", user] => Cmd::Show(user.to_string()),
        ["ban", user] => {
            allowed(&["--reason", "--for"])?;
            let reason = flag("--reason").ok_or("ban needs --reason TEXT (the banned user is shown it)")?;
            let for_ms = flag("--for").map(|d| duration(&d)).transpose()?.unwrap_or(0);
            Cmd::SetState { user: user.to_string(), state: State::Banned, for_ms, reason }
        }
        ["unban", user] | ["approve", user] => state(user, State::Active, false)?,
        ["block", user] => state(user, State::Blocked, true)?,
        ["hold", user] => state(user, State::OnHold, false)?,
        ["kick", user] => {
            allowed(&["--reason"])?;
            Cmd::Kick { user: user.to_string(), reason: flag("--reason").unwrap_or_default() }
        }
        ["announce", text @ ..] if !text.is_empty() => {
            allowed(&["--ttl"])?;
            let ttl_ms = flag("--ttl").map(|d| duration(&d)).transpose()?.unwrap_or(0);
            Cmd::Announce { text: text.join(" "), ttl_ms }
        }
        [verb @ ("grant" | "revoke"), user, role] => {
            let bit = acct::role_bit(role).ok_or_else(|| format!("unknown role `{role}`: moderator or admin"))?;
            if bit == acct::ROLE_USER {
                return Err("every account has the role user; grant or revoke moderator or admin".into());
            }
            Cmd::Role { user: user.to_string(), role: bit, grant: *verb == "grant" }
        }
        [verb @ ("deny" | "allow"), user, mnemonics @ ..] if !mnemonics.is_empty() => {
            if mnemonics.len() > acct::MAX_DENIED {
                return Err(format!("at most {} mnemonics at once", acct::MAX_DENIED));
            }
            for m in mnemonics {
                if acct::resolve(m).is_empty() {
                    return Err(format!(
                        "unknown mnemonic `{m}`: name a request sent after login (e.g. smps) or a classed family (srm covers srms, srmm, srml, srmx); see sottod --opcodes"
                    ));
                }
            }
            let mnemonics = mnemonics.iter().map(|m| m.to_string()).collect();
            Cmd::Deny { user: user.to_string(), mnemonics, allow: *verb == "allow" }
        }
        ["delete", user] => Cmd::Delete(user.to_string()),
        ["stats"] => Cmd::Stats,
        [] => return Err("no command".into()),
        [cmd, ..] => return Err(format!("`{cmd}`: unknown command, or the wrong arguments for it")),
    };
    Ok(Some(Opts { socket, json, cmd }))
}

/// The request frame for `cmd`.
pub fn request(cmd: &Cmd, id: u64, now: u64) -> Result<Vec<u8>, String> {
    let long = |what: &str, max: usize| format!("{what} is longer than {max} bytes");
    let bytes = match cmd {
        Cmd::Users { online } => {
            let mut m = AdminUsers::request(id, now);
            m.online = u8::from(*online);
            m.as_bytes().to_vec()
        }
        Cmd::Show(user) => {
            let mut m = AdminShow::request(id, now);
            m.set_user(user).map_err(|_| long("the user name", 32))?;
            m.as_bytes().to_vec()
        }
        Cmd::SetState { user, state, for_ms, reason } => {
            let mut m = AdminSetState::request(id, now);
            m.set_user(user).map_err(|_| long("the user name", 32))?;
            m.set_reason(reason).map_err(|_| long("the reason", 128))?;
            m.state = *state as u8;
            m.for_ms.set(*for_ms);
            m.as_bytes().to_vec()
        }
        Cmd::Kick { user, reason } => {
            let mut m = AdminKick::request(id, now);
            m.set_user(user).map_err(|_| long("the user name", 32))?;
            m.set_reason(reason).map_err(|_| long("the reason", 128))?;
            m.as_bytes().to_vec()
        }
        Cmd::Announce { text, ttl_ms } => {
            let mut m = AdminAnnounce::request(id, now);
            m.set_text(text).map_err(|_| long("the announcement", 255))?;
            m.ttl_ms.set(*ttl_ms);
            m.as_bytes().to_vec()
        }
        Cmd::Role { user, role, grant } => {
            let mut m = AdminRole::request(id, now);
            m.set_user(user).map_err(|_| long("the user name", 32))?;
            m.role = *role;
            m.grant = u8::from(*grant);
            m.as_bytes().to_vec()
        }
        Cmd::Deny { user, mnemonics, allow } => {
            let mut m = AdminDeny::request(id, now);
            m.set_user(user).map_err(|_| long("the user name", 32))?;
            m.allow = u8::from(*allow);
            for (slot, name) in m.mnemonics.chunks_exact_mut(4).zip(mnemonics) {
                slot[..name.len().min(4)].copy_from_slice(&name.as_bytes()[..name.len().min(4)]);
                m.count += 1;
            }
            m.as_bytes().to_vec()
        }
        Cmd::Delete(user) => {
            let mut m = AdminDelete::request(id, now);
            m.set_user(user).map_err(|_| long("the user name", 32))?;
            m.as_bytes().to_vec()
        }
        Cmd::Stats => AdminStats::request(id, now).as_bytes().to_vec(),
    };
    Ok(bytes)
}

fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let t = sotto::server::log::rfc3339(ms);
    t.split_once('.').map_or(t.clone(), |(s, _)| format!("{s}Z"))
}

fn state_name(v: u8) -> &'static str {
    State::from_u8(v).map_or("unknown", State::name)
}

fn roles(mask: u8) -> Vec<&'static str> {
    opcodes::ROLES.iter().filter(|(_, b)| mask & b != 0).map(|(n, _)| *n).collect()
}

fn logins(bytes: &[u8], count: u8) -> Result<Vec<Value>, String> {
    let list = acct::entries(bytes, count).map_err(|e| format!("malformed login records: {e}"))?;
    Ok(list
        .iter()
        .map(|l| json!({"ts": l.ts, "time": time(l.ts), "addr": l.addr.to_string(), "reason": l.outcome.name()}))
        .collect())
}

/// The answer as text and as JSON.
pub fn render(cmd: &Cmd, parts: &[Vec<u8>], last: &[u8]) -> Result<(String, Value), String> {
    let bad = |what: &str, e: wire::WireError| format!("malformed {what} from the server: {e}");
    match cmd {
        Cmd::Users { .. } => {
            let mut text = format!("{:<32}  {:<8}  {:<22}  {:>8}  {}", "NAME", "STATE", "ROLES", "SESSIONS", "CREATED");
            let mut users = Vec::new();
            for p in parts {
                let e = wire::decode::<AdminUserEntry>(p).map_err(|e| bad("auen", e))?;
                let name = e.name().map_err(|e| bad("auen", e))?;
                let state = state_name(e.state);
                let r = roles(e.roles);
                text.push_str(&format!(
                    "\n{name:<32}  {state:<8}  {:<22}  {:>8}  {}",
                    r.join(","),
                    e.sessions.get(),
                    time(e.created.get())
                ));
                users.push(json!({
                    "name": name, "uid": format!("{:016x}", e.uid.get()), "state": state, "roles": r,
                    "sessions": e.sessions.get(), "created": e.created.get(), "until": e.until.get(),
                }));
            }
            Ok((text, json!({"ok": true, "users": users})))
        }
        Cmd::Show(_) => {
            let r = wire::decode::<AdminUserInfo>(last).map_err(|e| bad("ainf", e))?;
            let name = r.name().map_err(|e| bad("ainf", e))?;
            let reason = r.reason().map_err(|e| bad("ainf", e))?;
            let state = state_name(r.state);
            let denied: Vec<String> = r
                .denied
                .chunks_exact(4)
                .take(usize::from(r.denied_count).min(acct::MAX_DENIED))
                .map(|m| String::from_utf8_lossy(m).trim_end_matches('\0').to_string())
                .collect();
            let ok = logins(&r.logins, r.login_count)?;
            let failed = logins(&r.failed, r.failed_count)?;
            let until = if r.until.get() == 0 { "indefinitely".to_string() } else { time(r.until.get()) };
            let mut text = format!(
                "user      {name} (uid {:016x})\nstate     {state}{}\nroles     {}\ncreated   {}\nsessions  {}\ndenied    {}",
                r.uid.get(),
                if state == "active" { String::new() } else { format!(" until {until}: {reason}") },
                roles(r.roles).join(", "),
                time(r.created.get()),
                r.sessions.get(),
                if denied.is_empty() { "nothing".to_string() } else { denied.join(" ") },
            );
            for (title, list) in [("last logins", &ok), ("failed logins", &failed)] {
                text.push_str(&format!("\n{title}:"));
                if list.is_empty() {
                    text.push_str(" none");
                }
                for l in list {
                    text.push_str(&format!(
                        "\n  {}  {:<39}  {}",
                        l["time"].as_str().unwrap_or("-"),
                        l["addr"].as_str().unwrap_or("-"),
                        l["reason"].as_str().unwrap_or("-")
                    ));
                }
            }
            let v = json!({
                "ok": true, "name": name, "uid": format!("{:016x}", r.uid.get()), "state": state,
                "until": r.until.get(), "reason": reason, "roles": roles(r.roles), "created": r.created.get(),
                "sessions": r.sessions.get(), "denied": denied, "logins": ok, "failed": failed,
            });
            Ok((text, v))
        }
        Cmd::Stats => {
            let s = wire::decode::<AdminStatsReply>(last).map_err(|e| bad("astt", e))?;
            let mut refusals = serde_json::Map::new();
            let mut lines = Vec::new();
            for p in parts {
                let r = wire::decode::<AdminRefusals>(p).map_err(|e| bad("arfs", e))?;
                let why = r.reason().map_err(|e| bad("arfs", e))?;
                refusals.insert(why.to_string(), json!(r.count.get()));
                lines.push(format!("  {:>8}  {why}", r.count.get()));
            }
            let rows = [
                ("connections", s.connections.get()),
                ("sessions", s.sessions.get()),
                ("users_online", s.users_online.get()),
                ("accounts", s.accounts.get()),
                ("rooms", s.rooms.get()),
                ("queued", s.queued.get()),
                ("queued_bytes", s.queued_bytes.get()),
                ("files", s.files.get()),
                ("file_bytes", s.file_bytes.get()),
                ("announcements", s.announcements.get()),
                ("admin_conns", s.admin_conns.get()),
            ];
            let mut v = serde_json::Map::new();
            v.insert("ok".into(), json!(true));
            let mut text = String::new();
            for (k, n) in rows {
                v.insert(k.into(), json!(n));
                text.push_str(&format!("{:<14} {n}\n", k.replace('_', " ")));
            }
            text.push_str("refused since start:");
            if lines.is_empty() {
                text.push_str(" nothing");
            }
            for l in lines {
                text.push('\n');
                text.push_str(&l);
            }
            v.insert("refusals".into(), Value::Object(refusals));
            Ok((text, Value::Object(v)))
        }
        _ => {
            let r = wire::decode::<AdminReply>(last).map_err(|e| bad("arep", e))?;
            let message = r.reason().map_err(|e| bad("arep", e))?.to_string();
            Ok((message.clone(), json!({"ok": true, "message": message})))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_durations() {
        assert_eq!(duration("30m"), Ok(1_800_000));
        assert_eq!(duration("2h"), Ok(7_200_000));
        assert_eq!(duration("7d"), Ok(604_800_000));
        assert_eq!(duration("45"), Ok(45_000));
        for bad in ["", "m", "2y", "-1h", "0s", "1.5h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_commands_and_refuses_what_cannot_be_sent() {
        let o = parse(words("--data /d --json ban bob --reason spam --for 2h")).unwrap().unwrap();
        assert_eq!(o.socket, PathBuf::from("/d/admin.sock"));
        assert!(o.json);
        assert!(
            matches!(o.cmd, Cmd::SetState { state: State::Banned, for_ms: 7_200_000, ref reason, .. } if reason == "spam")
        );
        assert!(parse(words("ban bob")).is_err(), "a ban needs a reason");
        assert!(parse(words("kick bob --for 2h")).is_err());
        assert!(parse(words("grant bob wizard")).is_err());
        assert!(parse(words("revoke bob user")).is_err());
        assert!(parse(words("deny bob srm zzzz")).err().unwrap_or_default().contains("zzzz"));
        assert!(parse(words("deny bob auth")).is_err(), "a login step cannot be denied");
        let o = parse(words("--socket /s deny bob srm smps")).unwrap().unwrap();
        assert!(matches!(o.cmd, Cmd::Deny { ref mnemonics, allow: false, .. } if mnemonics == &["srm", "smps"]));
        let o = parse(words("announce back in five --ttl 1h")).unwrap().unwrap();
        assert!(matches!(o.cmd, Cmd::Announce { ref text, ttl_ms: 3_600_000 } if text == "back in five"));
        assert!(parse(words("frob")).is_err() && parse(words("")).is_err() && parse(words("--bogus users")).is_err());
        let long = format!("show {}", "a".repeat(33));
        let o = parse(words(&long)).unwrap().unwrap();
        assert!(request(&o.cmd, 1, 2).is_err(), "a name that does not fit is refused, not cut");
    }
}
