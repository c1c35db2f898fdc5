//! The EC2 AMI bundle format (to be written).
