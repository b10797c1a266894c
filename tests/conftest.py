pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.crm",
    "tests.fixtures.psa",
    "tests.fixtures.erp",
    "tests.fixtures.stack",
    "tests.fixtures.ledger",
    "tests.fixtures.console",
]
