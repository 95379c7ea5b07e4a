"""The site: its configuration (loaded and checked before anything opens),
the small human-readable state store, the clock, and logging setup. Everything
else in the gateway may depend on this folder; it depends on nothing but
`protocols/`."""
