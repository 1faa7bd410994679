module squeeze

go 1.26
