// Command loadgen drives the api with a protocol-switched load.
package main

func main() {}
