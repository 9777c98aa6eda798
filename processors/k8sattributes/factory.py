"""Factory of the `k8sattributes` processor (`k8s_attributes` is the Collector's newer name)."""

from gateway.component import Factory, Kind
from processors.k8sattributes.config import K8sAttributesConfig
from processors.k8sattributes.processor import K8sAttributesProcessor

factory = Factory(kind=Kind.PROCESSOR, type="k8sattributes", config_model=K8sAttributesConfig,
                  create=K8sAttributesProcessor, aliases=("k8s_attributes",), mutates_data=True)
