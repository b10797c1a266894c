"""Developer tools that are not part of the product (the wheel holds only q2c/)."""
