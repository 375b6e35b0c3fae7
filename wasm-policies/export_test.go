package policies

// Instrument exposes instrument to the external tests.
var Instrument = instrument
