module github.com/splicefleet/splicefleet

go 1.26.8
