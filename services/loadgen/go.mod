module blackfriday.local/services/loadgen

go 1.26.0

replace blackfriday.local/gen => ../../gen
