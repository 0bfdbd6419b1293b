"""HTTP layer: Litestar app factory, controllers, msgspec request/response structs, auth."""
