# sotto: build, keys, tests and install. `make` builds keyed release binaries
# when keys/ holds keys (`make keys`), throwaway development keys otherwise.

CARGO  ?= cargo
PREFIX ?= /usr/local
BINS   := sottod sotto

.PHONY: all keys run test bench opcodes lint install clean

all:
	$(CARGO) build --release --bins
	@echo "binaries: target/release/sottod target/release/sotto"
	@if [ -f keys/server_rsa.pub.der ] && [ -f keys/deployment.key ]; then \
		echo "keys: embedded from keys/ (server key keys/server_rsa.pem)"; \
	else \
		echo "keys: NONE in keys/ -- built with THROWAWAY DEVELOPMENT KEYS; run 'make keys && make' before handing out binaries"; \
	fi

keys:
	SOTTO_QUIET_DEV_KEYS=1 $(CARGO) run --release --quiet --bin sotto-keygen -- $(if $(FORCE),--force) keys
	@echo "now run 'make' to build binaries that embed these keys"

run:
	@[ -f keys/server_rsa.pem ] || $(MAKE) keys
	$(CARGO) build --release --bins
	target/release/sottod --listen 127.0.0.1:7777 --data ./data --key keys/server_rsa.pem

# --no-fail-fast: every test binary runs even when one fails, so one run shows all failures.
test:
	$(CARGO) test --all-targets --no-fail-fast
	$(CARGO) test --doc
	$(CARGO) test -p sotto-bench --lib

# Benchmarks (docs/BENCHMARKS.md): sottod against ngircd and InspIRCd (installed
# from Debian's packages when missing and possible), plain and TLS, in one run;
# rewrites docs/BENCHMARKS.md. About 15 minutes; QUICK=1 under 3. Never part of
# `make test`.
bench:
	$(CARGO) build --release --bins -p sotto -p sotto-bench
	target/release/sotto-bench $(if $(QUICK),--quick) --report docs/BENCHMARKS.md

opcodes:
	$(CARGO) build --bin sottod
	$(or $(CARGO_TARGET_DIR),target)/debug/sottod --opcodes-markdown > docs/OPCODES.md.tmp
	mv docs/OPCODES.md.tmp docs/OPCODES.md

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# No dependency on `all`: `sudo make install` should not run cargo as root.
install:
	@for b in $(BINS); do [ -x target/release/$$b ] || { echo "target/release/$$b missing: run 'make' first"; exit 1; }; done
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(addprefix target/release/,$(BINS)) $(DESTDIR)$(PREFIX)/bin/

clean:
	$(CARGO) clean

# Fuzzing (fuzz/, cargo-fuzz): runs each target for FUZZ_SECONDS, one after
# another, at the lowest priority. Stable rustc: RUSTC_BOOTSTRAP=1 lets it
# take the -Z flags of the libFuzzer build. A crash stops here with the input
# saved in fuzz/artifacts/<target>/. `make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=decode`
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= deframer record decode handshake dispatch

.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 SOTTO_QUIET_DEV_KEYS=1 nice -n 19 $(CARGO) fuzz run $$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=4200 -print_final_stats=1 || exit 1; \
	done
