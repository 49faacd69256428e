"""The Pulumi program under mocks (harness), the settings and template builders, the admission evaluator."""
