"""Salesforce (CRM) sandbox: a faithful subset of the Salesforce REST API plus Outbound Messages."""
