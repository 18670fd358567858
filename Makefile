# The two set-up commands README promises: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test lint assets build browser-test conformance metrics-test nginx-test deploy-test bench fuzz soak

## run: fetch the Flash fallback if missing, build and start wsecho with its defaults, serving
## the checkout's www/ (so that the fallback is there, and page edits show without a rebuild)
run: assets
	$(CARGO) run --release --bin wsecho -- --www www

## test: every check: formatting, lints, the Rust tests, the page in a real browser, Autobahn
test: lint assets
	$(CARGO) test --workspace
	$(CARGO) test --all-features --target-dir $(FULL_TARGET) --test tls --test cluster
	$(MAKE) --no-print-directory browser-test
	$(MAKE) --no-print-directory metrics-test
	$(MAKE) --no-print-directory nginx-test
	$(MAKE) --no-print-directory deploy-test
	$(MAKE) --no-print-directory conformance

# The build with every feature (`tls`: wss:// and https://; `redis`: rooms across instances)
# goes to its own folder, so that it never replaces the default binary the other tests run.
FULL_TARGET := target/full

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --lib --no-default-features -- -D warnings
	$(CARGO) clippy --all-targets --all-features --target-dir $(FULL_TARGET) -- -D warnings

build:
	$(CARGO) build --release

# --- The Flash fallback: web-socket-js 1.0 (RFC 6455) ------------------------------------
# Fetched from the PyPI source archive of websockify 0.8.0, which carries it in
# include/web-socket-js/; pinned by the archive's hash and by each file's own hash.
# Never committed: www/vendor/ is git-ignored. Delete www/vendor/ to fetch again.
VENDOR := www/vendor
WEBSOCKIFY_PIN := websockify==0.8.0 --hash=sha256:547d3d98c5081f2dc2872a2e4a3aef33e0ee5141d5f6209204aab2f4a41548d2
define VENDOR_SHA256
22733d693d0ce58b4e1e6457b6465a8b7a9dabc8a82180a93e8a5184b041b967  WebSocketMain.swf
8677971b119ccdb82af697ff0e08f218490d15116f221d44301f1cc8797e67d4  swfobject.js
1ee8627070e5965f132d5771eeb70b8f8da8b3d5761537c23ddfb6686b149cf1  web_socket.js
endef
export VENDOR_SHA256

## assets: fetch and verify web-socket-js into www/vendor/ (a failure is reported, not fatal)
assets: $(VENDOR)/web_socket.js

$(VENDOR)/web_socket.js:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo '$(WEBSOCKIFY_PIN)' > "$$tmp/requirements.txt"; \
	if ! python3 -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
	        -r "$$tmp/requirements.txt" -d "$$tmp" > "$$tmp/pip.log" 2>&1; then \
	    echo "assets: cannot fetch websockify 0.8.0 from PyPI ($$(grep -m1 -i error "$$tmp/pip.log")); the page runs without its Flash fallback"; \
	    exit 0; \
	fi; \
	tar -xzf "$$tmp/websockify-0.8.0.tar.gz" -C "$$tmp" --strip-components=3 \
	    websockify-0.8.0/include/web-socket-js/WebSocketMain.swf \
	    websockify-0.8.0/include/web-socket-js/swfobject.js \
	    websockify-0.8.0/include/web-socket-js/web_socket.js; \
	if ! bad=$$(cd "$$tmp" && echo "$$VENDOR_SHA256" | sha256sum --check --quiet --strict 2>&1); then \
	    echo "assets: web-socket-js files do not match their pinned sha256 ($$(echo $$bad)); not installed, the page runs without its Flash fallback"; \
	    exit 0; \
	fi; \
	mkdir -p $(VENDOR) && cp "$$tmp/WebSocketMain.swf" "$$tmp/swfobject.js" "$$tmp/web_socket.js" $(VENDOR)/ && \
	echo "assets: web-socket-js (web_socket.js, swfobject.js, WebSocketMain.swf) verified into $(VENDOR)/"

# --- The page in a real browser (tests/browser/run.js) ------------------------------------
# Headless Chromium (Debian's `chromium`, installed by .ci/run), playwright-core and Ruffle
# from npm (tests/browser/package-lock.json), websockify from PyPI (tests/browser/requirements.txt).
BROWSER := tests/browser

## browser-test: native, Flash-bridge and no-assets runs of the page; screenshots in tests/artifacts/
browser-test: assets $(BROWSER)/node_modules/.package-lock.json $(BROWSER)/.venv/bin/websockify
	$(CARGO) build --quiet
	$(CARGO) build --quiet --all-features --target-dir $(FULL_TARGET)
	timeout 600 node $(BROWSER)/run.js

$(BROWSER)/node_modules/.package-lock.json: $(BROWSER)/package-lock.json
	cd $(BROWSER) && npm ci --no-audit --no-fund --loglevel=error

$(BROWSER)/.venv/bin/websockify: $(BROWSER)/requirements.txt
	python3 -m venv $(BROWSER)/.venv
	$(BROWSER)/.venv/bin/pip install --quiet --disable-pip-version-check -r $(BROWSER)/requirements.txt
	touch $@

# --- Protocol conformance (tests/conformance/run.py) ---------------------------------------
# Every Autobahn|Testsuite fuzzingclient case, run by PyPI kosoku (pinned) against the release
# binary with default settings. The HTML report stays in tests/artifacts/conformance/.
CONFORMANCE := tests/conformance

## conformance: Autobahn cases 1.x-13.x against wsecho, over ws:// and (the tls build) over
## wss://, then Python websockets compressing; fails unless every case passes both ways
conformance: $(CONFORMANCE)/.venv/bin/kosoku
	$(CARGO) build --release --quiet
	timeout 1200 $(CONFORMANCE)/.venv/bin/python $(CONFORMANCE)/run.py target/release/wsecho \
	    $(CONFORMANCE)/.venv/bin/kosoku tests/artifacts/conformance
	$(CARGO) build --release --quiet --all-features --target-dir $(FULL_TARGET)
	timeout 1200 $(CONFORMANCE)/.venv/bin/python $(CONFORMANCE)/run.py $(FULL_TARGET)/release/wsecho \
	    $(CONFORMANCE)/.venv/bin/kosoku tests/artifacts/conformance-wss --tls

$(CONFORMANCE)/.venv/bin/kosoku: $(CONFORMANCE)/requirements.txt
	python3 -m venv $(CONFORMANCE)/.venv
	$(CONFORMANCE)/.venv/bin/pip install --quiet --disable-pip-version-check -r $(CONFORMANCE)/requirements.txt
	touch $@

# --- Benchmarks (tests/bench/run.py; not part of `make test`) ---------------------------------
# wsecho against a raw TCP thread-per-connection echo (the floor), tokio-tungstenite, gevent +
# gevent-websocket, Python websockets and Node ws, all installed from the registries by the
# runner; load from target/release/wsload (tests/bench/wsload, a workspace member). Writes BENCHMARKS.md. About 55 minutes on 2 cores (5 rounds).

## bench: measure wsecho against the floor and its peers; writes BENCHMARKS.md
bench:
	python3 tests/bench/run.py

# --- /metrics, read by a real Prometheus parser (PyPI prometheus_client, pinned) ----------
METRICS := tests/metrics

## metrics-test: known traffic, then every count in /metrics checked
metrics-test: $(METRICS)/.venv/bin/python
	$(CARGO) build --release --quiet
	timeout 120 $(METRICS)/.venv/bin/python $(METRICS)/check.py target/release/wsecho

$(METRICS)/.venv/bin/python: $(METRICS)/requirements.txt
	python3 -m venv $(METRICS)/.venv
	$(METRICS)/.venv/bin/pip install --quiet --disable-pip-version-check -r $(METRICS)/requirements.txt
	touch $@

# --- deploy/nginx.conf, run by real nginx (Debian's package, installed by .ci/run) --------

## nginx-test: the example nginx config in front of two instances: https, wss, failover
nginx-test:
	$(CARGO) build --release --quiet
	timeout 120 python3 tests/nginx/check.py target/release/wsecho

## deploy-test: docs/operating.md's "Deploy" walkthrough, command by command (real nginx,
## redis-server, systemd-analyze), on the build it installs (tls and redis)
deploy-test:
	$(CARGO) build --release --quiet --bins --all-features --target-dir $(FULL_TARGET)
	timeout 120 python3 tests/deploy/walkthrough.py $(FULL_TARGET)/release/wsecho

# --- Fuzzing (not part of `make test`; `cargo test` replays what it keeps (src/fuzzing.rs)) ---
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the machine's stable toolchain
# build them. Each target runs FUZZ_SECONDS from the kept inputs; a crash or hang stops the run
# and leaves its input in fuzz/artifacts/TARGET/: fix it, then copy the input into
# fuzz/regressions/TARGET/ so that `cargo test` replays it for good.
FUZZ_TARGETS := opening upgrade page_path frames inflated_frames
FUZZ_SECONDS ?= 120

## fuzz: run each fuzz target for FUZZ_SECONDS (default 120)
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --version 0.13.2
	@for target in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$target && cp fuzz/regressions/$$target/* fuzz/corpus/$$target/ && \
	  echo "fuzz: $$target for $(FUZZ_SECONDS) s" && \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$target corpus/$$target -- \
	     -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	     2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|INFO: Running|==|SUMMARY|artifact_prefix|Test unit written)' ) ; \
	  if ls fuzz/artifacts/$$target/* >/dev/null 2>&1; then echo "fuzz: $$target found a failure: fuzz/artifacts/$$target/"; exit 1; fi; \
	done; echo "fuzz: every target ran $(FUZZ_SECONDS) s without a failure"

# --- The soak (not part of `make test`) --------------------------------------------------
SOAK := tests/soak

## soak: SOAK_SECONDS (default 600) of mixed honest and hostile traffic; writes SOAK.md
soak: $(SOAK)/.venv/bin/python
	$(CARGO) build --release --bin wsecho
	$(SOAK)/.venv/bin/python $(SOAK)/soak.py

$(SOAK)/.venv/bin/python: $(SOAK)/requirements.txt
	python3 -m venv $(SOAK)/.venv
	$(SOAK)/.venv/bin/pip install --quiet --disable-pip-version-check -r $(SOAK)/requirements.txt
	touch $@
