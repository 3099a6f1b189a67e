//! Runs saved inputs through a target's checks without cargo-fuzz or
//! libFuzzer, for a crash found elsewhere or a regression check of the
//! committed corpus: `cargo run --example replay -- dispatch FILE...`
//! (`dispatch` and `ratchet`, the targets whose model lives in this crate).

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let run: fn(&[u8]) = match target.as_str() {
        "dispatch" => sotto_fuzz::dispatch::run,
        "ratchet" => sotto_fuzz::ratchet::run,
        _ => {
            eprintln!("usage: replay dispatch|ratchet FILE...");
            std::process::exit(2);
        }
    };
    for path in args {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        run(&data);
        println!("{path}: ok");
    }
}
