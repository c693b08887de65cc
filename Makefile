# Dovetail build. Out of tree into $(BUILD) (default build/). `make help` lists the targets.
#
# Layout: matcher/ + loaders/ + store/ -> $(BUILD)/libdovetail.a; cli/ -> $(BUILD)/dovetail;
# server/ + generated proto code -> $(BUILD)/dovetaild; tests/unit/test_*.c -> one binary each.

BUILD ?= build
SAN ?= 0
PKGS := openblas lapacke libutf8proc jansson libxxhash hiredis libevent libevent_pthreads libprotobuf-c
PY := /usr/bin/python3

CC ?= cc
OPT ?= -O2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Werror -pthread -fno-strict-aliasing
ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDSAN := -fsanitize=address,undefined
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CPPFLAGS += -Imatcher -Iloaders -Istore -Iserver -I$(BUILD)/gen
CFLAGS := $(CFLAGS_BASE) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS := $(PKG_LIBS) -lstemmer -lcsv -lm -pthread $(LDSAN)

LIB_SRC := $(wildcard matcher/*.c loaders/*.c store/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libdovetail.a

PROTO := $(wildcard proto/dovetail/v1/*.proto)
PROTO_C := $(PROTO:proto/%.proto=$(BUILD)/gen/%.pb-c.c)
PROTO_OBJ := $(PROTO_C:%.c=%.o)

CLI_SRC := $(wildcard cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
SERVER_SRC := $(wildcard server/*.c)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/obj/%.o)
# server/ objects other than main.c are a library the unit tests link (the CLI needs none of them)
SERVER_LIB_OBJ := $(filter-out $(BUILD)/obj/server/main.o,$(SERVER_OBJ))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

BINS := $(BUILD)/dovetail $(if $(SERVER_SRC),$(BUILD)/dovetaild)

.PHONY: all deps test unit asan valgrind fuzz bench soak run demo clean help fmt
all: $(BINS) $(UNIT_BIN) $(BENCH_BIN)

help:
	@echo "make          build everything into $(BUILD)/ (libdovetail.a, dovetail, dovetaild, tests, benches)"
	@echo "make run      install missing Debian packages, build, start dovetaild on the demo data"
	@echo "make test     install missing Debian packages, build, run every test (unit + integration)"
	@echo "make asan     the same tests on an ASan + UBSan build in build/asan/; a sanitizer report fails them"
	@echo "make valgrind daemon_test.py with dovetaild under valgrind memcheck (tens of minutes)"
	@echo "make fuzz     libFuzzer (clang, ASan + UBSan) on every decoder, FUZZ_SECONDS (600) per target"
	@echo "make bench    run the benchmarks in bench/ (prints figures and ratios against peers)"
	@echo "make soak     dovetaild under a steady mix of every RPC for SOAK_SECONDS (600): errors, latency, memory"
	@echo "make demo     generate the bundled demo data set into $(BUILD)/demo/"
	@echo "make deps     only install missing Debian packages (scripts/deps.sh)"
	@echo "make clean    remove $(BUILD)/"

deps:
	@./scripts/deps.sh

$(BUILD)/obj/%.o: %.c | $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-unused-parameter -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/dovetail: $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/dovetaild: $(SERVER_OBJ) $(PROTO_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(SERVER_LIB_OBJ) $(PROTO_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

demo: $(BUILD)/demo/.stamp
$(BUILD)/demo/.stamp: scripts/gen_demo.py scripts/demo_vocab.json
	@mkdir -p $(BUILD)/demo
	$(PY) scripts/gen_demo.py --out $(BUILD)/demo
	@touch $@

test: deps
	$(MAKE) all demo
	./tests/run.sh $(BUILD)

unit: all
	./tests/run.sh --unit-only $(BUILD)

asan: deps
	$(MAKE) BUILD=build/asan SAN=1 OPT=-O1 all demo
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ./tests/run.sh build/asan

valgrind: deps
	@DOVETAIL_VALGRIND_DEPS=1 ./scripts/deps.sh
	$(MAKE) all demo
	./tests/valgrind.sh $(BUILD)

fuzz: deps
	@DOVETAIL_FUZZ_DEPS=1 ./scripts/deps.sh
	./tests/fuzz/run.sh

bench: deps
	@DOVETAIL_BENCH_DEPS=1 ./scripts/deps.sh
	$(MAKE) all
	./bench/run.sh $(BUILD)

soak: deps
	$(MAKE) all demo
	sh bench/soak.sh $(BUILD)

run: deps
	$(MAKE) all demo
	./scripts/run.sh $(BUILD)

fmt:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(SERVER_SRC) matcher/*.h loaders/*.h store/*.h

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
