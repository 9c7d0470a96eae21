"""promo-engine as an HTTP service (`promo serve`): an ASGI application on Starlette, served by uvicorn.

    from engine.service.app import Settings, create_app
    app = create_app(Settings(rules="rules", keys="keys.json", ledger="ledger.db"))

Modules: app (the endpoint table and the request pipeline), handlers (what each endpoint does), state
(the rule set and ledger being served, reloads, the key file, the clock), keys (API keys), bodies
(request and response schemas, bounded body reading), problems (error bodies), customer (the
customer's view of a trace), openapi (/openapi.json from the schema files), metrics (Prometheus),
cli (`promo serve`, `promo keys`). Nothing is imported here, so that every other `promo` command starts
without loading the web stack.
"""
