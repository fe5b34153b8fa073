module example.invalid/oldgo

go 1.26
