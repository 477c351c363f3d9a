# snapcrypt: build, test, demo, bench, fuzz, lint.
GO      ?= go
BIN     := bin/snapcrypt
PKGS    := ./...
FUZZTIME ?= 20s

.PHONY: all build test test-unit test-integration demo bench fuzz lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/snapcrypt

# The README's test command: unit tests (race detector on the packages that
# carry concurrency) and the integration suite with real FUSE mounts.
test: build lint
	$(GO) test -count=1 -timeout 15m $(PKGS)

demo: build
	./scripts/demo.sh

bench: build
	./scripts/bench.sh

# Each fuzzer runs for FUZZTIME.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); fi

clean:
	rm -rf bin
