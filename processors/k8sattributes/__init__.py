"""`k8sattributes` processor: adds Kubernetes pod metadata to the resources passing through."""
