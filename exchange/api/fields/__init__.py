"""GraphQL fields by business capability; ``exchange.api.roots`` merges them into Query and Mutation."""
