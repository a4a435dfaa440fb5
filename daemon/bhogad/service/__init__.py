"""Running as a service: socket activation, sd_notify and the instance lock."""
