# FlowScale for nginx.  `make run` brings up the demo, `make test` runs every
# test layer; both install what is missing first (`make deps`).

SHELL       := /bin/bash
TOP         := $(CURDIR)
BUILD       := $(TOP)/build
NGX_SRC     := /usr/share/nginx/src
MODULE      := $(BUILD)/ngx_http_flowscale_module.so
ASAN_MODULE := $(BUILD)/asan/ngx_http_flowscale_module.so
SOURCES     := config $(wildcard ngx_http_flowscale_module/*.[ch]) \
               $(wildcard ui/app.* ui/embed.sh)
# the pure C parts (jansson only): unit-tested and fuzzed on their own
PURE        := $(wildcard $(addprefix ngx_http_flowscale_module/ngx_http_flowscale_,\
                 workflow.c io.c form.c inputs.c reply.c capability.c \
                 openapi_doc.c))
UNIT_TESTS  := $(basename $(notdir $(wildcard t/unit/test_*.c)))
PY          := /usr/bin/python3
FUZZ_TIME   ?= 60

# Debian packages: what building, testing and `make run` need.
APT_PACKAGES := gcc make perl nginx nginx-dev libjansson-dev libpq-dev \
    libssl-dev libcmocka-dev postgresql python3-aiohttp libtest-base-perl \
    libwww-perl clang libclang-rt-14-dev valgrind curl procps wrk \
    nodejs chromium xxd

export TEST_NGINX_BINARY ?= /usr/sbin/nginx

.PHONY: all deps build asan unit fuzz test test-harness test-sim test-nginx \
        test-e2e test-app test-docs test-valgrind test-asan run clean

all: build

# npm packages of the test layers (t/js/package.json, pinned by its lock):
# @gradio/client, playwright-core, ... in a folder the Makefile owns
NPM := $(BUILD)/npm

deps: $(BUILD)/.deps $(NPM)/.installed

$(NPM)/.installed: t/js/package.json t/js/package-lock.json $(BUILD)/.deps
	@command -v npm >/dev/null || { \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends npm >/dev/null || exit 1; }
	@mkdir -p $(NPM)
	@cp t/js/package.json t/js/package-lock.json $(NPM)/
	@cd $(NPM) && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

$(BUILD)/.deps: Makefile
	@mkdir -p $(BUILD)
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing" $$missing; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || exit 1; \
	fi
	@touch $@

build: deps $(MODULE)

# The module is built against Debian's nginx-dev tree with the same
# configure flags as /usr/sbin/nginx, so it loads there.
$(MODULE): $(SOURCES)
	@[ ! -d $(BUILD)/nginx/objs ] || \
	    sh ui/embed.sh $(BUILD)/nginx/objs/flowscale_ui/ngx_http_flowscale_ui.h
	@bash build-module.sh $(BUILD)/nginx "" $@

asan: deps $(ASAN_MODULE)

$(ASAN_MODULE): $(SOURCES)
	@[ ! -d $(BUILD)/nginx-asan/objs ] || sh ui/embed.sh \
	    $(BUILD)/nginx-asan/objs/flowscale_ui/ngx_http_flowscale_ui.h
	@bash build-module.sh $(BUILD)/nginx-asan \
	    "-fsanitize=address -fno-omit-frame-pointer -g -O1" $@

unit: deps $(addprefix $(BUILD)/unit/,$(UNIT_TESTS))
	@set -e; cd t/unit && for t in $(UNIT_TESTS); do $(BUILD)/unit/$$t; done

$(BUILD)/unit/%: t/unit/%.c $(PURE) $(wildcard ngx_http_flowscale_module/*.h)
	@mkdir -p $(BUILD)/unit
	gcc -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined \
	    -Ingx_http_flowscale_module -o $@ $< $(PURE) \
	    -ljansson -lcrypto -lcmocka -lm

# each fuzz/fuzz_*.c target runs FUZZ_TIME seconds; new inputs go to build/
FUZZERS     := $(basename $(notdir $(wildcard fuzz/fuzz_*.c)))

fuzz: deps
	@set -e; for f in $(FUZZERS); do \
	    mkdir -p $(BUILD)/fuzz/corpus-$$f; \
	    clang -g -O1 -fsanitize=fuzzer,address,undefined \
	        -Ingx_http_flowscale_module -o $(BUILD)/fuzz/$$f.bin \
	        fuzz/$$f.c $(PURE) -ljansson -lcrypto -lm; \
	    dict=; [ -f fuzz/$${f#fuzz_}.dict ] && dict=-dict=fuzz/$${f#fuzz_}.dict; \
	    seeds=; [ -d fuzz/corpus/$${f#fuzz_} ] && seeds=fuzz/corpus/$${f#fuzz_}; \
	    echo "fuzz: $$f for $(FUZZ_TIME)s"; \
	    $(BUILD)/fuzz/$$f.bin -max_total_time=$(FUZZ_TIME) $$dict \
	        $(BUILD)/fuzz/corpus-$$f $$seeds; \
	done

test: build unit test-sim test-harness test-nginx test-e2e test-app test-docs
	@echo "make test: all layers passed"

test-sim: deps
	$(PY) -m unittest discover -s t/sim -p 'test_*.py'

test-harness: deps
	prove -It/lib -r t/harness

test-nginx: build
	TEST_NGINX_LOAD_MODULES=$(MODULE) prove -It/lib t/*.t

test-e2e: build
	TEST_NGINX_LOAD_MODULES=$(MODULE) prove -It/lib \
	    $(filter-out t/e2e/app.t t/e2e/docs.t,$(wildcard t/e2e/*.t))

# issue 9: the app page (headless Chromium) and Gradio's protocol
# (@gradio/client); screenshots in build/artefacts/
# issue 8: every OpenAPI document (conf/ and the test configuration)
# through `redocly lint --extends spec`, and the docs page in headless
# Chromium ("Try it out" with a key); artefacts in build/artefacts/
test-docs: build
	TEST_NGINX_LOAD_MODULES=$(MODULE) prove -It/lib t/e2e/docs.t

test-app: build
	TEST_NGINX_LOAD_MODULES=$(MODULE) prove -It/lib t/e2e/app.t

test-valgrind: build
	TEST_NGINX_USE_VALGRIND=1 TEST_NGINX_LOAD_MODULES=$(MODULE) \
	    prove -It/lib t/*.t

# the suites with an AddressSanitizer build of the module; any report fails
test-asan: asan
	@rm -rf $(BUILD)/asan/reports && mkdir -p $(BUILD)/asan/reports
	ASAN_REPORTS=$(BUILD)/asan/reports TEST_NGINX_BINARY=$(TOP)/t/bin/nginx-asan \
	TEST_NGINX_LOAD_MODULES=$(ASAN_MODULE) prove -It/lib t/*.t t/e2e
	@if ls $(BUILD)/asan/reports/asan.* >/dev/null 2>&1; then \
	    cat $(BUILD)/asan/reports/asan.*; echo "test-asan: reports above"; \
	    exit 1; fi

run: build
	@bash conf/run.sh

# run intake against plain nginx and PostgreSQL on loopback (bench/)
.PHONY: bench
bench: build
	@bash bench/run-intake.sh && bash bench/extras.sh

# bounded chaos: 1000 runs while a backend is killed and restarted (bench/)
.PHONY: soak
soak: build
	@bash bench/soak.sh

clean:
	rm -rf $(BUILD) t/servroot
