"""The TA-in-the-loop method: signals, TA scoring, calibration, selection and weights, the stage-2
schedule, acquisition."""
