"""HTTP layer: schemas, dependencies, error envelopes and one router per resource."""
