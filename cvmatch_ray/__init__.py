"""cvmatch-ray: self-hosted CV ingestion and job matching on Ray."""

__version__ = "0.1.0"
