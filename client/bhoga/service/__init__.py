"""Running bhogad as a login service: the unit files (systemd, launchd) as pure text renderers.

They live with the client because `bhoga service install` and `uninstall` write and remove them, and
uninstalling must work after the daemon's package is gone."""
