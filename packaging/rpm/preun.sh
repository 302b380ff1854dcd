# allocwatch %preun ($1: 0 on removal, 1 on upgrade): stop the service before removal.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl stop allocwatch.service || true
fi
