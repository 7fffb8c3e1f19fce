# highlander: build and install.
#
#   make                      build highlanderd, highlander, highlander.so and highlander-hook (release)
#   make install              install them (the hook as libvirt's qemu.d/highlander), the systemd unit, man pages,
#                             completions, docs and (only if absent) config templates
#   make uninstall            remove what install put there, except configuration
#   make deb                  a Debian package (dpkg-deb) of the same files, in
#                             $(TARGET_DIR)/debian/; config templates are conffiles
#   make check                the test suite (bash scripts/test.sh)
#
# Install layout (override any variable on the command line):
#   PREFIX         /usr
#   SBINDIR        $(PREFIX)/sbin       highlanderd and highlander (admin tools, man section 8)
#   LIBDIR         $(PREFIX)/lib/<multiarch> (Debian: dpkg-architecture), else $(PREFIX)/lib
#   LOCKDRIVERDIR  $(LIBDIR)/libvirt/lock-driver   libvirt looks for highlander.so here; it
#                  must be libvirt's own directory, so keep it at libvirt's prefix (/usr on
#                  Debian) even when PREFIX is /usr/local
#   UNITDIR        $(PREFIX)/lib/systemd/system
#   SYSCONFDIR     /etc   (libvirt and highlanderd read /etc/libvirt and /etc/highlander)
#   HOOKDIR        $(SYSCONFDIR)/libvirt/hooks/qemu.d   libvirt runs every executable there;
#                  highlander-hook goes there as `highlander` (declares network disks)
#   MANDIR, DOCDIR, BASHCOMPDIR, ZSHCOMPDIR, FISHCOMPDIR: see below
#   DESTDIR        staging root for packaging (make install DESTDIR=/tmp/stage)
#   NO_BUILD=1     install what is already built (e.g. `sudo make install NO_BUILD=1`
#                  after `make` as yourself, when root has no cargo)

PREFIX        ?= /usr
SBINDIR       ?= $(PREFIX)/sbin
MULTIARCH     ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
LIBDIR        ?= $(PREFIX)/lib$(if $(MULTIARCH),/$(MULTIARCH))
LOCKDRIVERDIR ?= $(LIBDIR)/libvirt/lock-driver
UNITDIR       ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR    ?= /etc
HOOKDIR       ?= $(SYSCONFDIR)/libvirt/hooks/qemu.d
LOCALSTATEDIR ?= /var
DATADIR       ?= $(PREFIX)/share
MANDIR        ?= $(DATADIR)/man
DOCDIR        ?= $(DATADIR)/doc/highlander
BASHCOMPDIR   ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR    ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR   ?= $(DATADIR)/fish/vendor_completions.d
DESTDIR       ?=

CARGO         ?= cargo
TARGET_DIR    ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE       := $(TARGET_DIR)/release
INSTALL       ?= install

BINS   := $(RELEASE)/highlanderd $(RELEASE)/highlander
PLUGIN := $(RELEASE)/libhighlander.so
HOOK   := $(RELEASE)/highlander-hook
DOCS   := README.md $(sort $(wildcard docs/*.md))
EXAMPLES := examples/highlanderd.conf examples/qemu-highlander.conf examples/qemu.conf.snippet \
            examples/highlanderd.service examples/icinga2-highlander.conf examples/nagios-highlander.cfg

.PHONY: all build install uninstall deb check clean
all: build

build:
	$(CARGO) build --release

check:
	bash scripts/test.sh

clean:
	$(CARGO) clean

install: $(if $(filter 1,$(NO_BUILD)),,build)
	@for f in $(BINS) $(PLUGIN) $(HOOK); do [ -f "$$f" ] || { echo "make install: $$f is missing; run make first" >&2; exit 1; }; done
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LOCKDRIVERDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) \
		$(DESTDIR)$(DOCDIR)/examples/domains $(DESTDIR)$(SYSCONFDIR)/highlander $(DESTDIR)$(SYSCONFDIR)/libvirt \
		$(DESTDIR)$(HOOKDIR)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(LOCALSTATEDIR)/lib/highlander
	$(INSTALL) -m 0755 $(BINS) $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 0644 $(PLUGIN) $(DESTDIR)$(LOCKDRIVERDIR)/highlander.so
	$(INSTALL) -m 0755 $(HOOK) $(DESTDIR)$(HOOKDIR)/highlander
	sed -e 's|/usr/sbin/highlander|$(SBINDIR)/highlander|g' \
	    -e 's|/usr/share/doc/highlander|$(DOCDIR)|g' \
	    examples/highlanderd.service > $(DESTDIR)$(UNITDIR)/highlanderd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/highlanderd.service
	$(RELEASE)/highlander generate man > $(DESTDIR)$(MANDIR)/man8/highlander.8
	$(RELEASE)/highlander generate man highlanderd > $(DESTDIR)$(MANDIR)/man8/highlanderd.8
	$(RELEASE)/highlander generate completions bash > $(DESTDIR)$(BASHCOMPDIR)/highlander
	$(RELEASE)/highlander generate completions zsh > $(DESTDIR)$(ZSHCOMPDIR)/_highlander
	$(RELEASE)/highlander generate completions fish > $(DESTDIR)$(FISHCOMPDIR)/highlander.fish
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/highlander.8 $(DESTDIR)$(MANDIR)/man8/highlanderd.8 \
		$(DESTDIR)$(BASHCOMPDIR)/highlander $(DESTDIR)$(ZSHCOMPDIR)/_highlander $(DESTDIR)$(FISHCOMPDIR)/highlander.fish
	$(INSTALL) -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 $(EXAMPLES) $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -m 0644 examples/domains/*.xml $(DESTDIR)$(DOCDIR)/examples/domains/
	@# Configuration is the administrator's: install a template only where there is none.
	@for pair in "examples/highlanderd.conf $(SYSCONFDIR)/highlander/highlanderd.conf" \
	             "examples/qemu-highlander.conf $(SYSCONFDIR)/libvirt/qemu-highlander.conf"; do \
		set -- $$pair; \
		if [ -e "$(DESTDIR)$$2" ]; then echo "kept existing $$2 (template: $(DOCDIR)/$$1)"; \
		else $(INSTALL) -m 0644 "$$1" "$(DESTDIR)$$2" && echo "installed template $$2"; fi; \
	done
	@echo
	@echo "Next (README.md, \"Install on a cluster\"):"
	@echo "  1. highlander lockspace init /dev/mapper/LUN --name NAME   (once, on shared storage)"
	@echo "  2. edit $(SYSCONFDIR)/highlander/highlanderd.conf: a unique host_id, lockspace = the shared path"
	@echo "  3. systemctl daemon-reload && systemctl enable --now highlanderd"
	@echo "  4. lock_manager = \"highlander\" in $(SYSCONFDIR)/libvirt/qemu.conf; systemctl restart libvirtd"
	@echo "     (libvirtd sees the network-disk hook $(HOOKDIR)/highlander only from its next start)"

# The version of the workspace ([workspace.package] in Cargo.toml).
VERSION  ?= $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
DEB_ARCH ?= $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_REVISION ?= 1
DEB_MAINTAINER ?= highlander maintainers <root@localhost>
DEB_DIR  := $(TARGET_DIR)/debian
DEB_ROOT := $(DEB_DIR)/highlander_$(VERSION)-$(DEB_REVISION)_$(DEB_ARCH)

deb: $(if $(filter 1,$(NO_BUILD)),,build)
	rm -rf $(DEB_ROOT)
	$(MAKE) --no-print-directory install NO_BUILD=1 DESTDIR=$(abspath $(DEB_ROOT)) PREFIX=/usr >/dev/null
	$(INSTALL) -d $(DEB_ROOT)/DEBIAN
	@glibc=$$(objdump -T $(BINS) $(PLUGIN) $(HOOK) | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1); \
	size=$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1); \
	{ echo "Package: highlander"; \
	  echo "Version: $(VERSION)-$(DEB_REVISION)"; \
	  echo "Architecture: $(DEB_ARCH)"; \
	  echo "Maintainer: $(DEB_MAINTAINER)"; \
	  echo "Installed-Size: $$size"; \
	  echo "Depends: libc6 (>= $$glibc), libgcc-s1, libblkid1"; \
	  echo "Recommends: libvirt-daemon-driver-qemu"; \
	  echo "Section: admin"; \
	  echo "Priority: optional"; \
	  echo "Description: disk leases for libvirt guests on shared storage"; \
	  echo " highlander keeps a lease per disk on shared storage (a LUN, an LV or a"; \
	  echo " file on NFS), so two guests never open one disk at once on any host:"; \
	  echo " a libvirt lock-driver plugin (lock_manager = \"highlander\"), the lease"; \
	  echo " daemon highlanderd and the highlander CLI. A replacement for sanlock."; \
	} > $(DEB_ROOT)/DEBIAN/control
	printf '%s\n' $(SYSCONFDIR)/highlander/highlanderd.conf $(SYSCONFDIR)/libvirt/qemu-highlander.conf > $(DEB_ROOT)/DEBIAN/conffiles
	printf '#!/bin/sh\nset -e\n# The unit is not enabled here: highlanderd needs its host_id and lockspace first.\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n' > $(DEB_ROOT)/DEBIAN/postinst
	printf '#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n' > $(DEB_ROOT)/DEBIAN/postrm
	chmod 0755 $(DEB_ROOT)/DEBIAN/postinst $(DEB_ROOT)/DEBIAN/postrm
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DEB_DIR)/ >/dev/null
	@echo "$(DEB_DIR)/highlander_$(VERSION)-$(DEB_REVISION)_$(DEB_ARCH).deb"

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/highlanderd $(DESTDIR)$(SBINDIR)/highlander \
		$(DESTDIR)$(LOCKDRIVERDIR)/highlander.so $(DESTDIR)$(HOOKDIR)/highlander $(DESTDIR)$(UNITDIR)/highlanderd.service \
		$(DESTDIR)$(MANDIR)/man8/highlander.8 $(DESTDIR)$(MANDIR)/man8/highlanderd.8 \
		$(DESTDIR)$(BASHCOMPDIR)/highlander $(DESTDIR)$(ZSHCOMPDIR)/_highlander $(DESTDIR)$(FISHCOMPDIR)/highlander.fish
	rm -rf $(DESTDIR)$(DOCDIR)
	rmdir $(DESTDIR)$(LOCALSTATEDIR)/lib/highlander 2>/dev/null || true
	@echo "kept $(SYSCONFDIR)/highlander/highlanderd.conf and $(SYSCONFDIR)/libvirt/qemu-highlander.conf (remove them by hand)"
	@echo "remove lock_manager = \"highlander\" from $(SYSCONFDIR)/libvirt/qemu.conf first: libvirt's QEMU driver does not load without its lock manager"
