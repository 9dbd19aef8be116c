"""Development tooling that is not part of the shipped controller (not in the wheel, not in the
image): it uses the product only through its public API, the Kubernetes API and the CRDs."""
