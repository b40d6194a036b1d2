"""The GraphQL API: query -> typed plan -> processors -> DSL -> execution -> shaped report."""
