"""The AWS layer: network, EKS cluster, node groups, the live facts read before them, IAM and tag builders."""
