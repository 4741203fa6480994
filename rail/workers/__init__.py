"""Several Rail processes per host: the parent that binds and supervises, the workers
that adopt its sockets (docs/scaling.md, "Worker processes")."""
