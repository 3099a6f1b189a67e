//! `sotto-keygen`: writes a deployment's key set (DESIGN §3) for `make keys`.
//!
//! Invariant: never overwrites a file without `--force`, and every private
//! file is created 0600 from the start (no window with looser permissions).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

const USAGE: &str = "\
usage: sotto-keygen [--force] [--next] DIR

Writes into DIR (created 0700 if missing):
  server_rsa.pem        server RSA-2048 private key, PKCS#8 PEM, mode 0600
  server_rsa.pub.der    its public key, SubjectPublicKeyInfo DER, mode 0644
  deployment.key        32 random bytes, mode 0600

  --next   write server_rsa.next.pem and server_rsa.next.pub.der instead: the
           next server key, which clients built afterwards also trust (rotation)
  --force  overwrite existing files
";

fn main() -> ExitCode {
    let (mut force, mut next, mut dir) = (false, false, None);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--force" => force = true,
            "--next" => next = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') || dir.is_some() => {
                eprint!("sotto-keygen: unexpected argument `{a}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
            a => dir = Some(PathBuf::from(a)),
        }
    }
    let Some(dir) = dir else {
        eprint!("sotto-keygen: missing DIR\n\n{USAGE}");
        return ExitCode::from(2);
    };
    match run(&dir, force, next) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("sotto-keygen: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path, force: bool, next: bool) -> Result<(), String> {
    let stem = if next { "server_rsa.next" } else { "server_rsa" };
    let pem = dir.join(format!("{stem}.pem"));
    let der = dir.join(format!("{stem}.pub.der"));
    let deploy = dir.join("deployment.key");
    let mut targets = vec![&pem, &der];
    if !next {
        targets.push(&deploy);
    }
    if !force {
        if let Some(p) = targets.iter().find(|p| p.exists()) {
            let how = if next { "--force" } else { "`make keys FORCE=1`" };
            return Err(format!("{} exists; refusing to overwrite it (use {how})", p.display()));
        }
    }
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }

    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| format!("key generation: {e}"))?;
    let pem_text = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| format!("encoding the private key: {e}"))?;
    let pub_der = key.to_public_key().to_public_key_der().map_err(|e| format!("encoding the public key: {e}"))?;
    write(&pem, pem_text.as_bytes(), 0o600)?;
    write(&der, pub_der.as_bytes(), 0o644)?;
    if !next {
        write(&deploy, &sotto::crypto::random::<32>(), 0o600)?;
    }
    for p in targets {
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// Creates (or truncates) `path` with `mode`, writes `bytes` and fsyncs.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let ctx = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).map_err(ctx)?;
    // The mode only applies on creation; with --force an existing file keeps its
    // own, so set it explicitly.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(ctx)?;
    f.write_all(bytes).map_err(ctx)?;
    f.sync_all().map_err(ctx)
}
