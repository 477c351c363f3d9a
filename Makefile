# snapcrypt: build, test, demo, bench, fuzz, lint.
GO      ?= go
BIN     := bin/snapcrypt
PKGS    := ./...
FUZZTIME ?= 20s
# The packages that carry concurrency (keys, rotation and lease if present,
# repo and its stores, fs) run under the race detector; the rest without.
RACE_RE   := /snapcrypt/(keys|rotation|lease|repo|fs)(/|$$)
RACE_PKGS  = $(shell $(GO) list $(PKGS) | grep -E '$(RACE_RE)')
OTHER_PKGS = $(shell $(GO) list $(PKGS) | grep -vE '$(RACE_RE)')

.PHONY: all build test demo bench fuzz lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/snapcrypt

# The README's test command: unit tests (race detector on the packages that
# carry concurrency) and the integration suite with real FUSE mounts. Each
# package runs once: RACE_PKGS with -race, the others without.
test: build lint
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 15m $(OTHER_PKGS)

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
