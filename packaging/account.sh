# Included by the Debian postinst and the RPM %pre/%post (packaging/build.sh assembles them):
# the one place that says who owns what an installed allocwatch uses.
#   system user and group `allocwatch`, home /var/lib/allocwatch, no shell;
#   /var/lib/allocwatch (the store) allocwatch:allocwatch 0750, never removed by the package;
#   /etc/allocwatch and its files root:allocwatch, 0750 / 0640 (the env file holds secrets).
aw_account() {
  if ! getent group allocwatch >/dev/null; then
    groupadd --system allocwatch
  fi
  if ! getent passwd allocwatch >/dev/null; then
    useradd --system --gid allocwatch --home-dir /var/lib/allocwatch --no-create-home \
      --shell /usr/sbin/nologin --comment "allocwatch daemon" allocwatch
  fi
}

aw_state_dir() {
  mkdir -p /var/lib/allocwatch
  chown allocwatch:allocwatch /var/lib/allocwatch
  chmod 0750 /var/lib/allocwatch
}

# Reload systemd's view of the unit and restart a running service after an upgrade; nothing
# when systemd is not running (a container, a chroot). The service is never enabled here: the
# configuration must name its centres and allocations first (README, "Install").
aw_systemd_after_install() {
  upgrade=$1
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    if [ "$upgrade" = yes ]; then
      systemctl try-restart allocwatch.service || true
    fi
  fi
}
