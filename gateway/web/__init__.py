"""HTTP: the app factory, the JSON API and its schemas, the generated OpenAPI document, the
one error middleware, the server, and the delivery portal."""
