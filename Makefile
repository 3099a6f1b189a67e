# sotto: build, keys, tests and install. `make` builds keyed release binaries
# when keys/ holds keys (`make keys`), throwaway development keys otherwise.

CARGO  ?= cargo
PREFIX ?= /usr/local
BINS   := sottod sotto sottoctl sotto-keygen
# The target directory cargo uses (CARGO_TARGET_DIR, a config file, or ./target).
TARGET_DIR := $(or $(shell $(CARGO) metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'),target)
# Where `make install` takes the binaries from.
BUILT  ?= $(TARGET_DIR)/release

.PHONY: all keys run cluster-demo test bench opcodes lint install clean

all:
	$(CARGO) build --release --bins
	@echo "binaries: $(TARGET_DIR)/release/sottod $(TARGET_DIR)/release/sotto"
	@if [ -f keys/server_rsa.pub.der ] && [ -f keys/deployment.key ]; then \
		echo "keys: embedded from keys/ (server key keys/server_rsa.pem)"; \
	else \
		echo "keys: NONE in keys/ -- built with THROWAWAY DEVELOPMENT KEYS; run 'make keys && make' before handing out binaries"; \
	fi

keys:
	@echo "building the key tool (sotto-keygen) ..."
	SOTTO_QUIET_DEV_KEYS=1 $(CARGO) build --release --bin sotto-keygen
	$(TARGET_DIR)/release/sotto-keygen $(if $(FORCE),--force) keys
	@echo "now run 'make' to build binaries that embed these keys"

run:
	@[ -f keys/server_rsa.pem ] || $(MAKE) keys
	$(CARGO) build --release --bins
	$(TARGET_DIR)/release/sottod --listen 127.0.0.1:7777 --data ./data --key keys/server_rsa.pem

# Three NATS servers and two sottod nodes on loopback (docs/OPERATIONS.md, "Cluster").
cluster-demo:
	bash tools/need-nats-server
	@[ -f keys/server_rsa.pem ] || $(MAKE) keys
	$(CARGO) build --release --bins
	bash tools/cluster-demo $(TARGET_DIR)/release/sottod keys/server_rsa.pem

# --no-fail-fast: every test binary runs even when one fails, so one run shows all failures.
test:
	bash tools/need-nats-server
	$(CARGO) test --all-targets --no-fail-fast
	$(CARGO) test --doc
	$(CARGO) test -p sotto-bench --lib

# Benchmarks (docs/BENCHMARKS.md): sottod against ngircd and InspIRCd (installed
# from Debian's packages when missing and possible), plain and TLS, in one run;
# rewrites docs/BENCHMARKS.md; the cluster section starts nats-server (installed
# with apt when missing). About 15 minutes; QUICK=1 under 3. Never part of
# `make test`.
bench:
	bash tools/need-nats-server
	$(CARGO) build --release --bins -p sotto -p sotto-bench
	$(TARGET_DIR)/release/sotto-bench $(if $(QUICK),--quick) --report docs/BENCHMARKS.md

opcodes:
	$(CARGO) build --bin sottod
	$(TARGET_DIR)/debug/sottod --opcodes-markdown > docs/OPCODES.md.tmp
	mv docs/OPCODES.md.tmp docs/OPCODES.md

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# No dependency on `all`: `sudo make install` should not run cargo as root.
# Lays out, under $(DESTDIR)$(PREFIX): bin/ (sottod, sotto, sottoctl, sotto-keygen),
# share/man/man8/sottod.8, sottoctl.8 and man1/sotto.1 (made by the binaries from their
# --help text), lib/systemd/system/sottod.service, and share/doc/sotto/
# (OPERATIONS.md and an example sottod.toml). `BUILT=dir` installs other builds.
install:
	@for b in $(BINS); do [ -x $(BUILT)/$$b ] || { echo "$(BUILT)/$$b missing: run 'make' first"; exit 1; }; done
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/sotto
	install -m 0755 $(addprefix $(BUILT)/,$(BINS)) $(DESTDIR)$(PREFIX)/bin/
	$(BUILT)/sottod --man > $(DESTDIR)$(PREFIX)/share/man/man8/sottod.8
	$(BUILT)/sotto --man > $(DESTDIR)$(PREFIX)/share/man/man1/sotto.1
	$(BUILT)/sottoctl --man > $(DESTDIR)$(PREFIX)/share/man/man8/sottoctl.8
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man8/sottod.8 $(DESTDIR)$(PREFIX)/share/man/man1/sotto.1 \
		$(DESTDIR)$(PREFIX)/share/man/man8/sottoctl.8
	sed 's|/usr/bin/sottod|$(PREFIX)/bin/sottod|' contrib/sottod.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/sottod.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/sottod.service
	install -m 0644 docs/OPERATIONS.md contrib/sottod.toml.example $(DESTDIR)$(PREFIX)/share/doc/sotto/

clean:
	$(CARGO) clean

# Fuzzing (fuzz/, cargo-fuzz): runs each target for FUZZ_SECONDS, one after
# another, at the lowest priority. Stable rustc: RUSTC_BOOTSTRAP=1 lets it
# take the -Z flags of the libFuzzer build. A crash stops here with the input
# saved in fuzz/artifacts/<target>/. `make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=decode`
# -max_len: the largest input a target needs, a class-x message or record
# (16,852 bytes on the wire) and a step's few bytes of control.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= deframer record seal_many decode handshake dispatch ratchet

.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 SOTTO_QUIET_DEV_KEYS=1 nice -n 19 $(CARGO) fuzz run $$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=17000 -print_final_stats=1 || exit 1; \
	done
