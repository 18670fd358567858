# The two set-up commands README promises: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test lint build

## run: build and start wsecho with its defaults (page on http://127.0.0.1:8080/)
run:
	$(CARGO) run --release --

## test: every check: formatting, lints, then all tests
test: lint
	$(CARGO) test

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

build:
	$(CARGO) build --release
