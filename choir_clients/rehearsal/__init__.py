"""choir-singer and choir-director: sound cards, calibration, the desk client."""
