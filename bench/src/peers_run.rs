//! The IRC peers in the same run: W1, W2, W4 and W6 against ngircd and
//! InspIRCd, plain and TLS, and the loopback limits.

use crate::report::Report;
use crate::work::Ctx;

/// The peers that could be started in this run.
pub struct Peers {
    pub names: Vec<String>,
}

impl Peers {
    /// Installs and checks the peers; None when none can run here.
    pub fn prepare(_ctx: &Ctx, _r: &mut Report) -> Option<Peers> {
        None
    }

    /// Runs workload `name` against every peer.
    pub fn run(&self, _name: &str, _ctx: &Ctx, _r: &mut Report) {}
}

/// Small writes over loopback TCP: the physical limit for fan-out.
pub fn loopback_limit(_ctx: &Ctx, _r: &mut Report) {}
