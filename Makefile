# Peerpatch. `make help` lists the targets.
# anacrolix/torrent is built without its cgo sqlite backend (nosqlite): Peerpatch keeps piece
# completion in bbolt. -race needs cgo, so tests build with cgo on and that tag set.
GO        ?= go
TAGS      := nosqlite
BIN       := bin/peerpatch
PKGS      := ./...
FUZZTIME  ?= 30s

.PHONY: help build demo test lint fuzz bench lab clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/peerpatch (static, CGO_ENABLED=0)
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -o $(BIN) ./cmd/peerpatch

demo: build ## run the whole story on this machine: seeder, 5 agents, a 64 MiB release
	./$(BIN) --log-level error demo

test: ## unit, fuzz-seed and integration tests with the race detector
	CGO_ENABLED=1 $(GO) vet -tags $(TAGS) $(PKGS)
	CGO_ENABLED=1 $(GO) test -tags $(TAGS) -race -timeout 15m $(PKGS)

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet -tags $(TAGS) $(PKGS)

fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list -tags $(TAGS) ./...); do \
	  for f in $$($(GO) test -tags $(TAGS) -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench: ## micro-benchmarks (hashing, verification, torrent creation)
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem ./pkg/...

clean: ## remove build output
	rm -rf bin
