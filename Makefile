# FlowScale for nginx.  `make run` brings up the demo, `make test` runs every
# test layer; both install what is missing first (`make deps`).

SHELL       := /bin/bash
TOP         := $(CURDIR)
BUILD       := $(TOP)/build
NGX_SRC     := /usr/share/nginx/src
MODULE      := $(BUILD)/ngx_http_flowscale_module.so
ASAN_MODULE := $(BUILD)/asan/ngx_http_flowscale_module.so
SOURCES     := config $(wildcard ngx_http_flowscale_module/*.[ch])
PURE        := ngx_http_flowscale_module/ngx_http_flowscale_workflow.c \
               ngx_http_flowscale_module/ngx_http_flowscale_io.c
PY          := /usr/bin/python3
FUZZ_TIME   ?= 60

# Debian packages: what building, testing and `make run` need.
APT_PACKAGES := gcc make perl nginx nginx-dev libjansson-dev libpq-dev \
    libssl-dev libcmocka-dev postgresql python3-aiohttp libtest-base-perl \
    libwww-perl clang libclang-rt-14-dev valgrind curl procps

export TEST_NGINX_BINARY ?= /usr/sbin/nginx

.PHONY: all deps build asan unit fuzz test test-harness test-sim test-nginx \
        test-valgrind test-asan run clean

all: build

deps: $(BUILD)/.deps

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
	@bash build-module.sh $(BUILD)/nginx "" $@

asan: deps $(ASAN_MODULE)

$(ASAN_MODULE): $(SOURCES)
	@bash build-module.sh $(BUILD)/nginx-asan \
	    "-fsanitize=address -fno-omit-frame-pointer -g -O1" $@

unit: deps
	@mkdir -p $(BUILD)/unit
	gcc -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined \
	    -Ingx_http_flowscale_module -o $(BUILD)/unit/test_workflow \
	    t/unit/test_workflow.c $(PURE) -ljansson -lcrypto -lcmocka -lm
	cd t/unit && $(BUILD)/unit/test_workflow

fuzz: deps
	@mkdir -p $(BUILD)/fuzz/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined \
	    -Ingx_http_flowscale_module -o $(BUILD)/fuzz/fuzz_workflow \
	    fuzz/fuzz_workflow.c $(PURE) -ljansson -lcrypto -lm
	$(BUILD)/fuzz/fuzz_workflow -max_total_time=$(FUZZ_TIME) \
	    -dict=fuzz/workflow.dict $(BUILD)/fuzz/corpus fuzz/corpus

test: build unit test-sim test-harness test-nginx
	@echo "make test: all layers passed"

test-sim: deps
	$(PY) -m unittest discover -s t/sim -p 'test_*.py'

test-harness: deps
	prove -It/lib -r t/harness

test-nginx: build
	TEST_NGINX_LOAD_MODULES=$(MODULE) prove -It/lib t/*.t

test-valgrind: build
	TEST_NGINX_USE_VALGRIND=1 TEST_NGINX_LOAD_MODULES=$(MODULE) \
	    prove -It/lib t/*.t

test-asan: asan
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	TEST_NGINX_LOAD_MODULES=$(ASAN_MODULE) prove -It/lib t/*.t

run: build
	@bash conf/run.sh

clean:
	rm -rf $(BUILD) t/servroot
