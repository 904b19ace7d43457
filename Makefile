# sdme: build, install and test.
#
#   make deps                the Debian packages to build and run sdme (root)
#   make                     build everything (static binaries)
#   make install             install what `make` built into $(DESTDIR)$(PREFIX)
#                            (it does not build: `make && sudo make install`)
#   make test-deps           the Debian packages the whole test suite needs (root)
#   make check               the whole test suite (unit, golden, release
#                            artifacts, e2e); needs root
#   make test                unit and golden tests only (no root needed)
#   make e2e                 the end-to-end suite alone; needs root
#   make test-ansible        the Ansible role (ansible/roles/sdme) against two
#                            booted test hosts; needs root and PyPI
#   make deb                 the Debian package, into target/dist/ (needs
#                            debhelper and lintian: make test-deps)
#   make dist                release artifacts into target/dist/: static
#                            binaries, an installed tree, the .deb, the
#                            source tarball and SHA256SUMS

PREFIX      ?= /usr
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LIBEXECDIR  ?= $(PREFIX)/libexec/sdme
GENERATORDIR?= $(PREFIX)/lib/systemd/system-generators
UNITDIR     ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SYSCTLDIR   ?= $(PREFIX)/lib/sysctl.d
MANDIR      ?= $(PREFIX)/share/man
APPARMORDIR ?= /etc/apparmor.d
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
CARGO       ?= cargo
# Without rustc (root's PATH often has no cargo), `make install` finds the
# build under the machine's usual target triple.
TARGET      ?= $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p' | grep . || echo "$$(uname -m)-unknown-linux-gnu")

# Static binaries: they run unchanged in any test host or image, whatever
# its libc. --target keeps build scripts dynamic.
RUSTFLAGS_STATIC = -C target-feature=+crt-static
BUILD_DIR = target/$(TARGET)/release
BINS_GENERATOR = sdme-generator
BINS_HELPERS = sdme-prepare sdme-boot-wait sdme-pod sdme-build sdme-drop-privs
# Static too: glibc >= 2.34 has the "files" and "dns" NSS sources built in,
# so a static sdme-import resolves registry and proxy names through
# /etc/hosts and DNS (checked: `localhost` resolves in the trixie and
# bookworm test hosts); other NSS modules (myhostname, resolve) are not
# loaded by a static binary.
BINS_USER = sdme-import sdme

.PHONY: all build install uninstall test check e2e test-ansible fmt clippy deps test-deps bench clean deb dist dist-check

all: build

# The C code of the -sys crates (compression, TLS) is built with Debian's
# default build flags (hardening: stack protector, fortify, relro), the
# ones dpkg-buildpackage sets for `make deb`, so that both share one cargo
# build instead of compiling twice.
ifneq ($(shell command -v dpkg-buildflags),)
CFLAGS   ?= $(shell dpkg-buildflags --get CFLAGS)
CPPFLAGS ?= $(shell dpkg-buildflags --get CPPFLAGS)
CXXFLAGS ?= $(shell dpkg-buildflags --get CXXFLAGS)
LDFLAGS  ?= $(shell dpkg-buildflags --get LDFLAGS)
# cc-based build scripts rerun when it changes; dpkg-buildpackage sets it
# from debian/changelog (reproducible builds).
SOURCE_DATE_EPOCH ?= $(shell dpkg-parsechangelog -S Timestamp 2>/dev/null)
export CFLAGS CPPFLAGS CXXFLAGS LDFLAGS SOURCE_DATE_EPOCH
endif

build:
	SDME_LIBEXECDIR=$(LIBEXECDIR) SDME_BINDIR=$(BINDIR) RUSTFLAGS="$(RUSTFLAGS_STATIC)" \
		$(CARGO) build --release --locked --target $(TARGET)

# Installs what was built, never builds: root may have no cargo.
install:
	@for b in $(BINS_GENERATOR) $(BINS_HELPERS) $(BINS_USER); do \
		[ -x $(BUILD_DIR)/$$b ] || { echo "make install: $(BUILD_DIR)/$$b is not built: run 'make' first (as your user, with cargo), then 'sudo make install'" >&2; exit 1; }; \
	done
	install -d $(DESTDIR)$(GENERATORDIR) $(DESTDIR)$(LIBEXECDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCTLDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(BUILD_DIR)/sdme-generator $(DESTDIR)$(GENERATORDIR)/sdme-generator
	for b in $(BINS_USER); do install -m 0755 $(BUILD_DIR)/$$b $(DESTDIR)$(BINDIR)/$$b; done
	for b in $(BINS_HELPERS); do install -m 0755 $(BUILD_DIR)/$$b $(DESTDIR)$(LIBEXECDIR)/$$b; done
	for u in units/*.service units/*.socket units/*.target; do [ -e "$$u" ] || continue; \
		sed 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' "$$u" > $(DESTDIR)$(UNITDIR)/$${u#units/}.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${u#units/}.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$${u#units/}.tmp $(DESTDIR)$(UNITDIR)/$${u#units/}; done
	install -m 0644 units/sdme.tmpfiles $(DESTDIR)$(TMPFILESDIR)/sdme.conf
	install -m 0644 units/sdme.sysctl $(DESTDIR)$(SYSCTLDIR)/60-sdme.conf
	for m in man/*.1; do [ -e "$$m" ] || continue; install -m 0644 "$$m" $(DESTDIR)$(MANDIR)/man1/; done
	install -d $(DESTDIR)$(APPARMORDIR)
	install -m 0644 apparmor/sdme-default $(DESTDIR)$(APPARMORDIR)/sdme-default
	for m in man/*.5; do [ -e "$$m" ] || continue; install -m 0644 "$$m" $(DESTDIR)$(MANDIR)/man5/; done
	for m in man/*.8; do [ -e "$$m" ] || continue; install -m 0644 "$$m" $(DESTDIR)$(MANDIR)/man8/; done
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(BUILD_DIR)/sdme config completions bash > $(DESTDIR)$(BASHCOMPDIR)/sdme
	$(BUILD_DIR)/sdme config completions zsh > $(DESTDIR)$(ZSHCOMPDIR)/_sdme
	$(BUILD_DIR)/sdme config completions fish > $(DESTDIR)$(FISHCOMPDIR)/sdme.fish
	chmod 0644 $(DESTDIR)$(BASHCOMPDIR)/sdme $(DESTDIR)$(ZSHCOMPDIR)/_sdme $(DESTDIR)$(FISHCOMPDIR)/sdme.fish

uninstall:
	rm -f $(DESTDIR)$(GENERATORDIR)/sdme-generator $(DESTDIR)$(TMPFILESDIR)/sdme.conf
	rm -f $(DESTDIR)$(SYSCTLDIR)/60-sdme.conf
	rm -f $(DESTDIR)$(APPARMORDIR)/sdme-default
	rm -f $(DESTDIR)$(BASHCOMPDIR)/sdme $(DESTDIR)$(ZSHCOMPDIR)/_sdme $(DESTDIR)$(FISHCOMPDIR)/sdme.fish
	for u in units/*.service units/*.socket units/*.target; do [ -e "$$u" ] || continue; rm -f $(DESTDIR)$(UNITDIR)/$${u#units/}; done
	for b in $(BINS_HELPERS); do rm -f $(DESTDIR)$(LIBEXECDIR)/$$b; done
	for b in $(BINS_USER); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
	for m in man/*.1; do rm -f $(DESTDIR)$(MANDIR)/man1/$${m#man/}; done
	for m in man/*.5; do rm -f $(DESTDIR)$(MANDIR)/man5/$${m#man/}; done
	for m in man/*.8; do rm -f $(DESTDIR)$(MANDIR)/man8/$${m#man/}; done

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Unit, conformance, property and golden tests.
test:
	$(CARGO) test --workspace --locked
	tests/man/check
	tests/apparmor/check
	tests/completion/check

# Packages to build and run sdme (Rust comes from rustup, not from here).
deps:
	tests/e2e/install-deps --build

# Packages the whole test suite needs on a fresh Debian machine.
test-deps:
	tests/e2e/install-deps

e2e: build
	tests/e2e/run

# The Ansible role on Debian 12 and 13 test hosts (tests/ansible/run).
test-ansible: build
	tests/ansible/run

check: test-deps fmt clippy test dist-check test-ansible e2e

bench: build
	tests/bench/generator-1000

# dpkg-buildpackage writes its results next to the source tree; they are
# moved into target/dist/. The version is the workspace's, which every
# binary's --version shows; debian/changelog must be at it (checked).
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DIST_DIR = target/dist
deb:
	@[ "$(VERSION)" = "$$(dpkg-parsechangelog -S Version)" ] || \
		{ echo "make deb: debian/changelog's version is not Cargo.toml's $(VERSION)" >&2; exit 1; }
	dpkg-buildpackage -b -us -uc --no-pre-clean
	mkdir -p $(DIST_DIR)
	for f in deb buildinfo changes; do mv ../sdme_$(VERSION)_*.$$f $(DIST_DIR)/; done
	rm -rf debian/sdme debian/.debhelper debian/files debian/debhelper-build-stamp \
		debian/sdme.substvars debian/sdme.postinst.debhelper debian/sdme.postrm.debhelper \
		debian/sdme.prerm.debhelper
	lintian --fail-on error,warning $(DIST_DIR)/sdme_$(VERSION)_*.changes
	@ls -l $(DIST_DIR)/sdme_$(VERSION)_*.deb

# Release artifacts (.github/workflows/release.yml attaches them to a
# release): each static binary as NAME-VERSION-ARCH, the tree `make
# install` writes as a tarball (units, man pages, completions: for image
# builders), the .deb, the source of HEAD, and their sums.
ARCH = $(firstword $(subst -, ,$(TARGET)))
RELEASE = sdme-$(VERSION)
dist: build
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "make dist: not a git checkout (the source tarball is HEAD's)" >&2; exit 1; }
	rm -rf $(DIST_DIR)
	$(MAKE) --no-print-directory deb
	for b in $(BINS_GENERATOR) $(BINS_HELPERS) $(BINS_USER); do \
		install -m 0755 $(BUILD_DIR)/$$b $(DIST_DIR)/$$b-$(VERSION)-$(ARCH); done
	rm -rf $(DIST_DIR)/tree && $(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(DIST_DIR)/tree
	tar --owner=0 --group=0 --numeric-owner --sort=name --mtime=@$$(dpkg-parsechangelog -S Timestamp) \
		-C $(DIST_DIR)/tree -czf $(DIST_DIR)/$(RELEASE)-$(ARCH)-linux.tar.gz .
	rm -rf $(DIST_DIR)/tree
	git archive --format=tar.gz --prefix=$(RELEASE)/ -o $(DIST_DIR)/$(RELEASE).tar.gz HEAD
	cd $(DIST_DIR) && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | sort | \
		xargs sha256sum > SHA256SUMS
	@cat $(DIST_DIR)/SHA256SUMS

# What CI runs so that the release path cannot rot.
dist-check: dist
	cd $(DIST_DIR) && sha256sum -c SHA256SUMS
	tar -tzf $(DIST_DIR)/$(RELEASE).tar.gz $(RELEASE)/Cargo.toml $(RELEASE)/debian/control >/dev/null
	$(DIST_DIR)/sdme-$(VERSION)-$(ARCH) --version | grep -qx "sdme $(VERSION)"

clean:
	$(CARGO) clean
