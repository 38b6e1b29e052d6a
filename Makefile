# pg_recall: PGXS build.  `make demo` and `make test` first install what is
# missing (scripts/setup.sh), so they work before pg_config exists.

EXTENSION = pg_recall
MODULE_big = pg_recall
OBJS = \
	src/pg_recall.o \
	src/become.o \
	src/config.o \
	src/wiped.o \
	src/json_field.o \
	src/actor.o \
	src/guard.o \
	src/events.o \
	src/log_writer.o \
	src/key_json.o \
	src/copies.o \
	src/event_log.o \
	src/payload.o \
	src/launcher.o \
	src/worker.o \
	src/dispatcher.o \
	src/purger.o \
	src/purge.o \
	src/rebuild.o \
	src/sweep.o \
	src/recall_fn.o \
	src/registry.o \
	src/registry_check.o \
	src/backfill.o \
	src/trigger_call.o \
	src/citus.o \
	src/compat_1_0.o

DATA = $(wildcard sql/pg_recall--*.sql)

# pg_regress suites: every sql/*.sql but the install scripts
REGRESS = $(sort $(patsubst sql/%.sql,%,$(filter-out sql/pg_recall--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --load-extension=pg_recall
# isolation specs live in test/specs with expected output in test/expected
ISOLATION = $(sort $(patsubst test/specs/%.spec,%,$(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --outputdir=output_iso --load-extension=pg_recall

PG_CPPFLAGS = -Isrc
# every source includes the shared header
RECALL_HEADERS = src/pg_recall.h src/worker.h src/erasure.h
PG_CFLAGS = -Wall -Werror

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

.PHONY: setup demo test bench fuzz deb

ifneq ($(PGXS),)
include $(PGXS)
else
all:
	@echo "pg_config not found: run 'make demo' or 'make test' (they install PostgreSQL 15), or scripts/setup.sh" >&2
	@exit 1
endif

$(OBJS): $(RECALL_HEADERS)

# pg_recall_relay, the listener program: a sub-make (PGXS builds one kind
# of target per Makefile), installed next to PostgreSQL's programs.
ifneq ($(wildcard src/relay/Makefile),)
all: relay
install: relay-install
clean: relay-clean
.PHONY: relay relay-install relay-clean
relay:
	$(MAKE) -C src/relay PG_CONFIG=$(PG_CONFIG)
relay-install: relay
	$(MAKE) -C src/relay PG_CONFIG=$(PG_CONFIG) install
relay-clean:
	$(MAKE) -C src/relay PG_CONFIG=$(PG_CONFIG) clean
endif

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

bench: setup
	@bash scripts/setup.sh --bench
	@bash scripts/bench.sh

# A long sqlsmith run (test/t/041_fuzz.pl; make test runs a short one):
# FUZZ_QUERIES queries per role, a new seed each run (RECALL_FUZZ_SEED to
# replay one).
FUZZ_QUERIES ?= 20000
fuzz: setup
	@RECALL_TAP=test/t/041_fuzz.pl RECALL_FUZZ_QUERIES=$(FUZZ_QUERIES) \
	 RECALL_FUZZ_SEED=$${RECALL_FUZZ_SEED:-$$(date +%s)} \
	 RECALL_TEST_TIMEOUT=$${RECALL_TEST_TIMEOUT:-14400} bash scripts/test.sh

# The Debian package postgresql-15-pg-recall (debian/, pg_buildext), built in
# a copy of the tree: the .deb lands in $(DEB_DIR) (default build/deb).
DEB_DIR ?= build/deb
deb:
	@bash scripts/setup.sh --deb
	@bash scripts/deb.sh $(DEB_DIR)
