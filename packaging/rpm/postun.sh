# allocwatch %postun: the store (/var/lib/allocwatch) and the user are kept.
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
