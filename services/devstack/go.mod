module blackfriday.local/services/devstack

go 1.26.0

require blackfriday.local/gen v0.0.0

replace blackfriday.local/gen => ../../gen
