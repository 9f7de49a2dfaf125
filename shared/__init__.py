"""MongoDB change streams to Azure Data Lake Storage Gen2, exactly once."""
