"""The valuation science: validation, features, estimators, nowcasts, signals. Pure functions."""
