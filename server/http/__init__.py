"""The HTTP layer: the Falcon app, its route table, resources, access rules and
serving (waitress or Granian). It drives the engine and imports nothing below it
but the engine's public parts."""
