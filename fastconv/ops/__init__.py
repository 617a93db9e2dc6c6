"""Public op front ends: validate, resolve a spec, dispatch to a backend."""
