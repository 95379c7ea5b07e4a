"""The field engineer's tools: the `edgegw` command line, the control socket
(server in the daemon, client in the CLI), status, scan/read, watch, diag,
explain, faults, doorlog, the texts in both languages, the MQTT commands,
and the demo. Nothing in the daemon's pipeline imports from here."""
