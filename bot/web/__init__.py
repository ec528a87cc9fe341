"""The UI beside ingress: sign-in, the session inspector, the playground, setup pages."""
