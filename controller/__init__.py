"""The DGDR controller: generic machinery (`machinery`) and the DGDR logic (`dgdr`)."""
